#!/bin/bash
# The gateway's handler on Lambda: the AWS Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) runs
# this script, waits until the app answers on AWS_LWA_PORT, then forwards each invocation to it as an HTTP
# request and streams the response back. Layers sit in /opt/python and the runtime's boto3 in
# LAMBDA_RUNTIME_DIR; plain uvicorn (asyncio, h11), one worker: an environment serves one request at a time.
PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}/opt/python:${LAMBDA_RUNTIME_DIR:-/var/runtime}" \
    exec python -m uvicorn app:app --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" \
    --no-access-log --no-server-header --timeout-keep-alive 3600 --log-level warning
