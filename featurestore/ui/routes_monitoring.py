"""TODO"""

from fastapi import FastAPI

from featurestore.ui.app import Console


def register(app: FastAPI, console: Console) -> None:
    pass
