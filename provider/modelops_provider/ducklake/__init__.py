"""DuckLake data platform (Yacobolo/ducklake-dataplatform) Model Runs: trigger, wait, cancel, read
steps and test results, gate the DAG on them, and emit asset events for the models a run built."""
