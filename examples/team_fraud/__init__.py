"""A worked team package: the fraud team extends mdlc-constructs without forking it.

* ``stack.TeamTrainingWorkflow`` swaps the evaluation step (``build_evaluation``)
  for a generalization check run by the team's own Lambda handler
  (``handlers/overfit_evaluation``).
* ``stack.TeamIntegration`` and ``stack.TeamBatchInference`` grant the team's
  action its one permission on both acting paths.
* ``stack.TeamFraudStack`` swaps those three stages by their class attributes
  (``training_workflow_class``, ``client_integration_class``,
  ``batch_inference_class``: same construct ids, so the deployed resources stay)
  and adds an alarm on failed training runs (``build_team_alarms``).
* ``team_actions.CaseManagementAction`` is a rule action of a new kind
  (``case_management``) that the spec names as ``{kind: custom, handler:
  "team_actions:CaseManagementAction"}``.
* ``app.py`` deploys ``models/`` with the library's own app builder.
"""
