"""What turns a Lambda event into an application call (app.py turns HTTP requests into them): SQS and Kinesis
batches in, partial batch failures out. Nothing below this layer imports it."""
