# The registry's `model_registered` webhook event, built from its model-ready message
# (model_id, token_symbol, model_name, status, model_version, mlflow_run_id, tags,
# api_schema, eval_spec, scorer_ref, primary_metric, benchmark_spec_id, timestamp, …):
#
#   {"event_type": "model_registered",
#    "model": {"id", "name", "status", "version", "run_id"?, "user_id"?, "api_schema"?,
#              "eval_spec"?, "scorer_ref"?, "primary_metric"?, "benchmark_spec_id"?},
#    "timestamp": "<timestamp>Z", "source": "mlflow"}
#
# Fields marked `?` are left out when the message has no value for them, as the
# registry's Python publisher does.

# Python's truthiness, which the registry's `a or b` uses to pick the user id.
def truthy: . != null and . != false and . != "" and . != 0 and . != [] and . != {};

{
  event_type: "model_registered",
  model: (
    {
      id: (.token_symbol | ascii_downcase),
      name: .model_name,
      status: .status,
      version: .model_version
    }
    + (if .mlflow_run_id != null then {run_id: .mlflow_run_id} else {} end)
    + ((.tags // {}) as $tags
       | [$tags.user_id, $tags.fulfilled_by_user_id | select(truthy)]
       | if length > 0 then {user_id: .[0]} else {} end)
    + ({api_schema, eval_spec, scorer_ref, primary_metric, benchmark_spec_id}
       | with_entries(select(.value != null)))
  ),
  timestamp: "\(.timestamp)Z",
  source: "mlflow"
}
