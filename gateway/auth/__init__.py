"""Who may call the gateway: the credentials file and the verification of presented secrets.

Nothing here knows HTTP; ``gateway/api/auth.py`` reads the Authorization header
and maps a missing or wrong credential to MLflow's error JSON.
"""

from gateway.auth.credentials import SCOPES, CredentialsFile, CredentialsError, User, scope_allows
from gateway.auth.verifier import Principal, Verifier

__all__ = ["SCOPES", "CredentialsError", "CredentialsFile", "Principal", "User", "Verifier", "scope_allows"]
