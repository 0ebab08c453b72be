"""Storage: SQLAlchemy 2.0 models, engines and migrations."""

from arkyra.db.models import AIUsage, Base, IntegrationStatus, Organization, ThirdParty
from arkyra.db.session import Database

__all__ = ["AIUsage", "Base", "Database", "IntegrationStatus", "Organization", "ThirdParty"]
