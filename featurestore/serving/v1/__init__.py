"""Generated from proto/featurestore/serving/v1/serving.proto by `make proto`; never edit by hand."""
