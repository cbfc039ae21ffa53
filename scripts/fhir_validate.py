#!/usr/bin/env python3
"""Validate FHIR R4 JSON with PyPI fhir.resources==6.4.0 (FHIR 4.0.1).

Usage: fhir_validate.py FILE...   (or '-' for standard input)

Each input is one resource, a Bundle, or a JSON array of resources. Every
resource is parsed with fhir.resources' own model (a Bundle is validated as a
Bundle, which validates its entries). Prints one line per resource and exits
1 if any fails, 2 on unreadable input. Written for Satchel's tests; the
validation itself is fhir.resources', not ours.
"""
import json
import sys

from fhir.resources import construct_fhir_element


def resources(doc):
    if isinstance(doc, list):
        for item in doc:
            yield from resources(item)
    else:
        yield doc


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    total = 0
    for path in argv[1:]:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
            doc = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - report and stop
            print(f"{path}: unreadable JSON: {exc}", file=sys.stderr)
            return 2
        for index, res in enumerate(resources(doc)):
            total += 1
            rtype = res.get("resourceType") if isinstance(res, dict) else None
            try:
                if not rtype:
                    raise ValueError("no resourceType")
                construct_fhir_element(rtype, res)
                print(f"ok {path}#{index} {rtype}")
            except Exception as exc:  # noqa: BLE001 - fhir.resources raises pydantic errors
                failed += 1
                print(f"INVALID {path}#{index} {rtype}: {exc}")
    print(f"fhir_validate: {total - failed} valid, {failed} invalid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
