"""Monitoring: what the store serves and how it compares with what it trained on."""
