"""A PySpark application that does nothing but stay up, so the tests can inspect the executor pods its driver
creates. It prints one line, `muster-spark-app-started app_id=<id>`, once the SparkContext exists (the fixture waits
for it), then sleeps until the process that launched it (spark-submit's JVM) is gone: Python's parent dying does not
kill it, and a driver left behind would keep creating pods. A file named `muster-finish` appearing in its working
directory ends it as a finished application ends: the SparkContext stops (Spark deletes its executor pods) and the
process exits 0.
"""

import os
import sys
import time

from pyspark.sql import SparkSession

launcher = os.getppid()
spark = SparkSession.builder.getOrCreate()
print(f"muster-spark-app-started app_id={spark.sparkContext.applicationId}", flush=True)
while os.getppid() == launcher:
    if os.path.exists("muster-finish"):
        spark.stop()
        break
    time.sleep(0.5)
sys.exit(0)
