"""The local stack: moto, the Xero emulator, a Sugar double, a gateway, a poller and a timer,
all on 127.0.0.1 and all built from ``infra/template.yaml``."""
