"""The classification rules every provider adapter shares, under their old name: they live in
stratus.provider_http, where the embedding adapters can use them too (see stratus.llm.errors)."""

from __future__ import annotations

from stratus.provider_http import ErrorTypes as ErrorTypes
from stratus.provider_http import classify_sdk_error as classify_sdk_error
from stratus.provider_http import describe as describe
from stratus.provider_http import for_status as for_status
from stratus.provider_http import malformed as malformed
from stratus.provider_http import parse_arguments as parse_arguments
from stratus.provider_http import retry_after as retry_after
