"""spark-submit jobs/search.py --conf conf/<profile>.yaml [--set key=value]"""
import sys

from climb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
