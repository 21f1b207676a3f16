"""Loaded by schemathesis (infra/scripts/schemathesis.sh) before it runs.

CPython 3.11 before 3.11.8 can fail `ast.parse` when called deep in a stack ("AST constructor
recursion depth mismatch"). Hypothesis parses source only to print a lambda in a strategy's
description, so a failure there is not a finding about the API: describe such lambdas plainly.
"""

from hypothesis.internal import lambda_sources

_describe = lambda_sources.lambda_description


def _plain_description(f):
    try:
        return _describe(f)
    except SystemError:
        return "lambda"


lambda_sources.lambda_description = _plain_description
