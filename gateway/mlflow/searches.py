"""The request checks of searches: page sizes, view types, experiment ids and id lists."""

from __future__ import annotations

from gateway.errors import InvalidParameter
from gateway.mlflow.limits import MAX_SEARCH_RESULTS
from gateway.mlflow.messages import invalid_type
from gateway.mlflow.numbers import experiment_id
from gateway.mlflow.wire import VIEW_TYPES


def max_results(value: int, limit: int = MAX_SEARCH_RESULTS, param: str = "max_results") -> int:
    """Check runs/search's page size, with MLflow's messages.

    Over the limit is a request check (with the type hint MLflow adds, although
    the type is right); below 1 is the store's "positive integer" message.

    Args:
        value: the page size, already read by :func:`int64_field`.
        limit: the largest page size allowed.
        param: the request field, for the message.

    Returns:
        The page size.

    Raises:
        InvalidParameter: the page size is over ``limit`` or below 1.
    """
    if 1 <= value <= limit:
        return value
    if value > limit:
        raise invalid_type(param, value)
    raise InvalidParameter(f"Invalid value {value} for parameter '{param}' supplied. It must be a positive integer")


def page_size(value: object) -> int:
    """Check experiments/search's page size (and a search's, as MLflow's store checks it).

    Returns:
        The page size.

    Raises:
        InvalidParameter: not an integer, below 1 or over 50000; MLflow words the two bounds differently.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameter(f"Invalid value {value} for parameter 'max_results' supplied. It must be a positive integer")
    if value > MAX_SEARCH_RESULTS:
        raise InvalidParameter(
            f"Invalid value {value} for parameter 'max_results' supplied. It must be at most {MAX_SEARCH_RESULTS}"
        )
    return value


def experiment_id_field(value: object, param: str = "experiment_ids") -> str:
    """An experiment id from a search request: a string or (third-party clients) a number.

    Raises:
        InvalidParameter: another JSON type (a request check), or not an integer.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise invalid_type(param, value)
    experiment_id(value)
    return str(value)


def id_count(request_name: str, noun: str, items: list, limit: int) -> None:
    """MLflow's messages for a list of ids that is empty or longer than ``limit``."""
    if not items:
        raise InvalidParameter(f"{request_name} request must specify at least one {noun}.")
    if len(items) > limit:
        raise InvalidParameter(
            f"{request_name} request cannot specify more than {limit} {noun}s. Received {len(items)} {noun}s."
        )


def view_type(value: object, param: str = "view_type") -> str:
    """A view type by name or (as some clients send it) by number; ACTIVE_ONLY when absent.

    Raises:
        InvalidParameter: not one of ACTIVE_ONLY, DELETED_ONLY, ALL.
    """
    if value is None:
        return "ACTIVE_ONLY"
    if isinstance(value, int) and not isinstance(value, bool):
        value = VIEW_TYPES.get(value, value)
    if value not in VIEW_TYPES.values():
        raise InvalidParameter(
            f"Invalid value {value!r} for parameter '{param}' supplied. "
            "It must be one of ACTIVE_ONLY, DELETED_ONLY, ALL"
        )
    return value  # type: ignore[return-value]
