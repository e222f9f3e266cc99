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
    elif command == "labelled":
        from clinical.guardrails_eval.labelled import evaluate as evaluate_labelled, table as labelled_table

        result = evaluate_labelled()
        print(labelled_table(result))
        print(json.dumps({k: v.get("errors", v.get("misses")) for k, v in result.items()}, indent=1))
    else:
        sys.exit("usage: python -m clinical.guardrails_eval [build|evaluate|labelled]")
