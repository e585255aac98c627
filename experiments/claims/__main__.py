"""`python -m experiments.claims`: rebuild the claims ledger (docs/CLAIMS.md) from docs/results/ (see ledger.py)."""

import sys

from experiments.claims.ledger import main

if __name__ == "__main__":
    sys.exit(main())
