"""The Dagster Pipes face of the lightweight-mmm runner.

It runs inside lightweight-mmm's own environment (`.venv-lwmmm`), launched by the
`measurement/mmm_lightweight_mmm` asset through `PipesSubprocessClient`: it reads the asset's
extras, streams the runner's progress to the Dagster log and reports a few headline numbers.
The fitting is `models/mmm/lightweight/runner.py`, which knows nothing of Dagster.
"""

import sys
from pathlib import Path

from dagster_pipes import open_dagster_pipes

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models" / "mmm" / "lightweight"))
import runner  # a script beside the model, not an installed package


def main() -> int:
    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        result = runner.run(
            Path(extras["input_path"]),
            Path(extras["output_path"]),
            list(extras["channels"]),
            dict(extras.get("settings") or {}),
            pipes.log.info,
        )
        if pipes.is_asset_step:
            pipes.report_asset_materialization(
                metadata=runner.headline(result), asset_key=extras.get("asset_key")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
