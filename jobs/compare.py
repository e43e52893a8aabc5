"""spark-submit jobs/compare.py --conf conf/<profile>.yaml [--set key=value]"""
import sys

from climb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
