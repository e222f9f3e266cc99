import json
import sys

from clinical.guardrails_eval.build import build, write
from clinical.guardrails_eval.evaluate import evaluate, table

if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "evaluate"
    if command == "build":
        print(f"wrote {write(build())}")
    elif command == "evaluate":
        result = evaluate()
        print(f"{result['cases']} cases in {result['seconds']} s")
        print(table(result))
        print(json.dumps(result["errors"], indent=1))
    else:
        sys.exit("usage: python -m clinical.guardrails_eval [build|evaluate]")
