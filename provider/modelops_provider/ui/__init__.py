"""The "Model runs" page and the task instances' "Remote run" tab (an Airflow plugin)."""
