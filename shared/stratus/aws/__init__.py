"""AWS adapter: boto3 clients and the S3/SQS operations the domain needs, in domain terms."""
