"""A Lambda service on 127.0.0.1 for offline work (extra ``[local]``).

It speaks the Invoke API to boto3 and the Runtime API to a pool of real
``awslambdaric`` processes running the handler: the same runtime client that
runs Python functions on AWS, so the handler is exercised the way Lambda
runs it. No Docker needed.
"""

from omni_executor_lambda.local.functions import LocalFunction
from omni_executor_lambda.local.service import LocalLambdaService

__all__ = ["LocalFunction", "LocalLambdaService"]
