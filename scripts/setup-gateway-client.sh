#!/usr/bin/env bash
# Installs what the gateway's third-party client test needs, idempotently:
# npm fhir-kit-client (a FHIR client written elsewhere) and jose (signs the
# SMART Backend Services client assertion) into <repo>/.cache/gateway-client,
# where tests/gateway/third_party_client.mjs finds them
# (tests/tests/gateway_third_party.rs).
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/npm-pinned.sh" gateway-client \
  fhir-kit-client@2.0.3 jose@6.2.19
