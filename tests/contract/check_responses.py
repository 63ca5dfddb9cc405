"""Checks real responses against openapi.yaml; run by the `openapi` integration tests.

Usage: check_responses.py OPENAPI_YAML < exchanges.ndjson

Each input line is one exchange: {"method", "path" (the template, e.g. /api/v1/metrics/session/{id}),
"status", "headers" (lower-cased names), "body"}. Prints one JSON line per problem, then one line
{"unexercised": [...]} listing the documented (method, path, status) no exchange produced.
Exit status 0 when the document itself is valid OpenAPI 3.1.
"""

import json
import sys

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = "urn:openapi"


def main() -> None:
    with open(sys.argv[1]) as f:
        document = yaml.safe_load(f)
    validate(document)
    registry = Registry().with_resource(ROOT, Resource.from_contents(document, DRAFT202012))
    exercised = set()
    for line in sys.stdin:
        exchange = json.loads(line)
        key = (exchange["method"].lower(), exchange["path"], str(exchange["status"]))
        exercised.add(key)
        for problem in check(document, registry, exchange):
            print(json.dumps({"exchange": key, "problem": problem}))
    documented = {
        (method, path, status)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }
    print(json.dumps({"unexercised": sorted(documented - exercised)}))


def check(document, registry, exchange):
    operation = document["paths"].get(exchange["path"], {}).get(exchange["method"].lower())
    if operation is None:
        return ["the operation is not in the document"]
    response = operation["responses"].get(str(exchange["status"]))
    if response is None:
        return [f"status {exchange['status']} is not documented for this operation"]
    response = resolve(document, response)
    problems = []
    headers = exchange["headers"]
    for name, header in response.get("headers", {}).items():
        header = resolve(document, header)
        value = headers.get(name.lower())
        if value is None:
            if header.get("required"):
                problems.append(f"required header {name} is missing")
            continue
        schema = header["schema"]
        if schema.get("type") == "integer":
            try:
                value = int(value)
            except ValueError:
                problems.append(f"header {name}: {value!r} is not an integer")
                continue
        problems += errors(registry, schema, value, f"header {name}")
    content = response.get("content", {})
    if not content and exchange["body"] not in ("", None):
        problems.append("the document promises no body, but there is one")
    if "application/json" in content:
        if not headers.get("content-type", "").startswith("application/json"):
            problems.append(f"content-type is {headers.get('content-type')!r}")
        problems += errors(registry, content["application/json"]["schema"], exchange["body"], "body")
    return problems


def resolve(document, node):
    while "$ref" in node:
        target = document
        for part in node_path(node["$ref"]):
            target = target[part]
        node = target
    return node


def node_path(ref):
    return [part.replace("~1", "/").replace("~0", "~") for part in ref.removeprefix("#/").split("/")]


def errors(registry, schema, instance, where):
    rooted = json.loads(json.dumps(schema).replace('"#/components/', f'"{ROOT}#/components/'))
    validator = Draft202012Validator(rooted, registry=registry, format_checker=FormatChecker())
    return [f"{where}: {e.json_path}: {e.message}" for e in validator.iter_errors(instance)]


if __name__ == "__main__":
    main()
