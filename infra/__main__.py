"""Pulumi program entry: read the stack config, compose the components, export the outputs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plantstream_infra.settings import load_settings
from plantstream_infra.stack import define_stack, export_all

export_all(define_stack(load_settings()))
