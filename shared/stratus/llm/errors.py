"""The provider failure taxonomy, under the name the model router and its callers have always used.

The classes live in stratus.provider_errors, beside this package rather than in it, because the hosted
embedding adapters (stratus.embeddings) raise the same classes and this package imports the embedders
(the offline provider reads MiniLM): defining them here would be an import cycle.
"""

from __future__ import annotations

from stratus.provider_errors import AllDeploymentsFailed as AllDeploymentsFailed
from stratus.provider_errors import AuthenticationFailed as AuthenticationFailed
from stratus.provider_errors import CircuitOpen as CircuitOpen
from stratus.provider_errors import ContextLengthExceeded as ContextLengthExceeded
from stratus.provider_errors import DeadlineExceeded as DeadlineExceeded
from stratus.provider_errors import InvalidRequest as InvalidRequest
from stratus.provider_errors import MalformedResponse as MalformedResponse
from stratus.provider_errors import Overloaded as Overloaded
from stratus.provider_errors import ProviderEgressRequired as ProviderEgressRequired
from stratus.provider_errors import ProviderError as ProviderError
from stratus.provider_errors import ProviderTimeout as ProviderTimeout
from stratus.provider_errors import ProviderUnavailable as ProviderUnavailable
from stratus.provider_errors import RateLimited as RateLimited
from stratus.provider_errors import ServerError as ServerError
from stratus.provider_errors import StreamInterrupted as StreamInterrupted
from stratus.provider_errors import deciding as deciding
from stratus.provider_errors import read_wire as read_wire
