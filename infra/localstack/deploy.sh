#!/bin/bash
# The `deploy` service of localstack-compose.yml: migrate MySQL, package the app with Chalice (stage
# localstack), complete the template with infra/sam.py (--target localstack: the queues and streams are the
# ones the init hook provisioned) and deploy it into LocalStack with the same CloudFormation commands as on
# AWS (docs/deploy.md). Re-running updates the stack.
set -euo pipefail
: "${AWS_ENDPOINT_URL:?}" "${DATABASE_URL:?}" "${REDIS_URL:?}"
STACK=seat-booking
BUCKET=seat-booking-artifacts
AWSCLI_VERSION=1.46.3   # its own venv: awscli pins a botocore of its own
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1

# The project is mounted read-only; work on a copy (chalice package writes into .chalice/).
work=/tmp/seat-booking
rm -rf "$work" && mkdir -p "$work"
tar -C /src --exclude=./.venv --exclude=./.git --exclude=./build --exclude=./.chalice/deployments -cf - . \
    | tar -C "$work" -xf -
cd "$work"

echo "deploy: installing the app's pinned packages, chalice and yoyo-migrations"
python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
dev = {r.split("==")[0]: r for r in p["optional-dependencies"]["dev"]}
print("\n".join(p["dependencies"] + [dev["chalice"], dev["yoyo-migrations"]]))' > /tmp/requirements.txt
python -m pip install -q --root-user-action=ignore -r /tmp/requirements.txt
test -x /opt/awscli/bin/aws || { python -m venv /opt/awscli && /opt/awscli/bin/pip install -q "awscli==$AWSCLI_VERSION"; }
# The CLI reaches LocalStack through AWS_ENDPOINT_URL (`--endpoint-url` would not reach the S3 upload of
# `cloudformation package`), with path-style S3 URLs (`localstack` is no S3 virtual-host domain).
printf '[default]\ns3 =\n    addressing_style = path\n' > /tmp/aws-config
aws() { AWS_CONFIG_FILE=/tmp/aws-config /opt/awscli/bin/aws "$@"; }

python -m infra.migrate --database-url "$DATABASE_URL"
chalice package --stage localstack build/localstack
# The functions run in containers on the compose network: the services by their names.
python -m infra.sam build/localstack/sam.json --target localstack \
    --set "DATABASE_URL=$DATABASE_URL" --set "REDIS_URL=$REDIS_URL" --set "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"

aws s3api head-bucket --bucket "$BUCKET" 2>/dev/null || aws s3 mb "s3://$BUCKET"
aws cloudformation package --use-json --template-file build/localstack/sam.json --s3-bucket "$BUCKET" \
    --output-template-file build/localstack/packaged.json > /dev/null
# Over 51,200 bytes: the template itself goes through the bucket too.
aws cloudformation deploy --template-file build/localstack/packaged.json --stack-name "$STACK" \
    --s3-bucket "$BUCKET" --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset
api=$(aws cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='RestAPIId'].OutputValue" --output text)
echo "deploy: done. The API: http://localhost:4566/_aws/execute-api/$api/api/health"
