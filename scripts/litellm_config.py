"""Write the effective LiteLLM config: config/litellm.yaml minus what cannot work here.

Drops models with an `os.environ/VAR` parameter (a key, an address) whose variable is unset, and
the Langfuse callbacks when LiteLLM has no Langfuse keys. Usage: litellm_config.py SOURCE
DESTINATION.
Runs inside the project virtualenv (PyYAML comes with LiteLLM).
"""

import os
import sys

import yaml


def usable(model: dict) -> bool:
    values = [str(value) for value in model.get("litellm_params", {}).values()]
    variables = [value.split("/", 1)[1] for value in values if value.startswith("os.environ/")]
    return all(os.environ.get(variable) for variable in variables)


def main(source: str, destination: str) -> None:
    with open(source, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    kept = [model for model in config.get("model_list", []) if usable(model)]
    dropped = [model["model_name"] for model in config.get("model_list", []) if not usable(model)]
    config["model_list"] = kept
    if not (os.environ.get("LANGFUSE_PUBLIC_KEY") and os.environ.get("LANGFUSE_SECRET_KEY")):
        settings = config.get("litellm_settings", {})
        for callbacks in ("success_callback", "failure_callback"):
            settings[callbacks] = [c for c in settings.get(callbacks, []) if c != "langfuse"]
    with open(destination, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    names = ", ".join(model["model_name"] for model in kept)
    note = f" (without a key: {', '.join(dropped)})" if dropped else ""
    print(f"litellm models: {names}{note}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
