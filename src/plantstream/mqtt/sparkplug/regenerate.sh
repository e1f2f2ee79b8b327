#!/bin/sh
# Regenerates sparkplug_b_pb2.py from sparkplug_b.proto. The protoc of grpcio-tools 1.69
# writes code for the protobuf 5.29 runtime that plantstream pins; install it aside:
#   pip install --target /tmp/grpctools "grpcio-tools==1.69.0"
#   PROTOC_PATH=/tmp/grpctools sh src/plantstream/mqtt/sparkplug/regenerate.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="${PROTOC_PATH:-/tmp/grpctools}" python3 -m grpc_tools.protoc \
  --proto_path="$here" --python_out="$here" --pyi_out="$here" "$here/sparkplug_b.proto"
