#!/bin/bash
# LocalStack init hook (localstack-compose.yml mounts this directory at /etc/localstack/init/ready.d and the
# project at /opt/seat-booking): once LocalStack is ready, create the queues, DLQs and streams with
# infra/provision.py, the same code `make run` uses against the embedded emulator and AWS, with the
# `localstack` stage's names. LocalStack's own Python has boto3, all that provisioning needs.
set -euo pipefail
cd /opt/seat-booking
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=http://localhost:4566 PYTHONDONTWRITEBYTECODE=1
# LocalStack starts its Kinesis engine on the first stream call, which takes longer than a request's usual 5 s.
export AWS_READ_TIMEOUT_SECONDS=120
for python in /opt/code/localstack/.venv/bin/python python3; do
    if "$python" -c "import boto3" 2>/dev/null; then
        exec "$python" -c 'from infra.local.stage import apply_stage_environment
apply_stage_environment("localstack")
from infra.provision import main
main()'
    fi
done
echo "provision.sh: no Python with boto3 in the LocalStack image" >&2
exit 1
