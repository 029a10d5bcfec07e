"""The Lambda function: ``omni_executor_lambda.function.handler.handler`` (extra ``[function]``)."""
