"""Gateway: the OpenAI-compatible HTTP API, an ASGI app that uvicorn serves (run.sh) behind the AWS Lambda
Web Adapter, which streams each response back through API Gateway as it is written.

Cold start imports FastAPI, the app's routes and settings only: the database driver, boto3, the
embedding runtime and the provider SDKs load on the first request that needs them.
"""

from stratus.gateway.app import create_app
from stratus.gateway.context import request_id_from
from stratus.lambda_web import LambdaInvocations
from stratus.observability import observe

# A bad configuration fails the cold start, naming the variable. The request middleware flushes the spans
# after the streamed response itself: no extension.
obs = observe("gateway", flush_after_result=False)
# Each request is one invocation: its Lambda context (request id, deadline, trace) comes in a header.
app = LambdaInvocations(create_app(), obs, request_id=request_id_from)
