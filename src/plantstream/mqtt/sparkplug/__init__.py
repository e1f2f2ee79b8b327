"""Sparkplug B 3.0: the payload schema (sparkplug_b.proto), topics, the primary host."""
