"""spark-submit jobs/export.py --conf conf/<profile>.yaml [--set key=value]"""
import sys

from climb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
