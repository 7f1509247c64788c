"""Resource wiring: every machine-specific setting comes from the environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource

from assets.dbt import dbt_project
from assets.resources import (
    ARTIFACTS_PATH_ENV,
    AdPlatforms,
    ArtifactStore,
    EmbeddingModel,
    LandingZone,
    LanguageModel,
    VectorIndex,
    Warehouse,
)
from connectors.warehouse import WAREHOUSE_PATH_ENV
from models.ingestion.sources import LANDING_PATH_ENV


def dbt_executable() -> str:
    """The environment's dbt. DbtCliResource refuses to start when dbt is not on PATH, and
    `dagster dev` may start code servers with the resolved interpreter rather than the venv's."""
    for candidate in (
        Path(sys.executable).with_name("dbt"),
        Path(sys.prefix) / "bin" / "dbt",
        Path(__file__).resolve().parents[1] / ".venv" / "bin" / "dbt",
    ):
        if candidate.exists():
            return str(candidate)
    return shutil.which("dbt") or "dbt"


def _optional(name: str) -> dg.EnvVar | None:
    """An EnvVar where the variable is set: secrets are resolved by Dagster at run time and
    never appear in the definitions; unset means the embedded default."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_creative_resources() -> dict[str, object]:
    """Embeddings, vector store and LLM: embedded defaults unless the environment names a
    remote service (see README, "Configuration")."""
    return {
        "embeddings": EmbeddingModel(
            provider=os.environ.get("ADLOOP_EMBEDDINGS_PROVIDER", "local"),
            model=os.environ.get("ADLOOP_EMBEDDINGS_MODEL", "text-embedding-3-small"),
            base_url=_optional("ADLOOP_EMBEDDINGS_BASE_URL"),
            api_key=_optional("OPENAI_API_KEY"),
        ),
        "vector_store": VectorIndex(
            backend=os.environ.get("ADLOOP_VECTOR_STORE", "duckdb"),
            url=_optional("WEAVIATE_URL"),
            api_key=_optional("WEAVIATE_API_KEY"),
        ),
        "llm": LanguageModel(
            base_url=_optional("ADLOOP_LLM_BASE_URL"),
            api_key=_optional("ADLOOP_LLM_API_KEY"),
            model=_optional("ADLOOP_LLM_MODEL"),
            structured_output=os.environ.get("ADLOOP_LLM_STRUCTURED_OUTPUT", "json_schema"),
        ),
    }


def build_ad_platforms() -> AdPlatforms:
    """The local sandbox unless base URLs name the real APIs; tokens only from the environment.
    The sandbox's URL and folder are read when a step runs (see AdPlatforms), not here."""
    return AdPlatforms(
        google_ads_base_url=_optional("ADLOOP_GOOGLE_ADS_BASE_URL"),
        google_ads_access_token=_optional("ADLOOP_GOOGLE_ADS_ACCESS_TOKEN"),
        google_ads_developer_token=_optional("ADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN"),
        google_ads_login_customer_id=_optional("ADLOOP_GOOGLE_ADS_LOGIN_CUSTOMER_ID"),
        meta_base_url=_optional("ADLOOP_META_BASE_URL"),
        meta_access_token=_optional("ADLOOP_META_ACCESS_TOKEN"),
    )


def build_resources() -> dict[str, object]:
    return {
        "warehouse": Warehouse(path=dg.EnvVar(WAREHOUSE_PATH_ENV)),
        "landing": LandingZone(path=dg.EnvVar(LANDING_PATH_ENV)),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable()),
        "artifacts": ArtifactStore(path=dg.EnvVar(ARTIFACTS_PATH_ENV)),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
        "ad_platforms": build_ad_platforms(),
        **build_creative_resources(),
    }
