"""omni on AWS Lambda.

- ``LambdaDiffusionExecutor`` (``executor_class="lambda"``): invokes a function through boto3.
  Importing it needs neither torch nor the function's stack.
- ``omni_executor_lambda.function.handler`` (extra ``[function]``): the function itself.
- ``omni lambda local`` (extra ``[local]``): a Lambda service on 127.0.0.1 for offline work.
"""

from omni_executor_lambda._version import __version__
from omni_executor_lambda.executor import LambdaDiffusionExecutor, LambdaOptions

__all__ = ["LambdaDiffusionExecutor", "LambdaOptions", "__version__"]
