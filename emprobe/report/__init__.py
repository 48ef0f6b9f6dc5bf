"""Reports: HTML report and summary.json of a study (issue: demo)."""
