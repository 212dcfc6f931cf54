import sys

from imagebind_vectorizer.cli import main

sys.exit(main())
