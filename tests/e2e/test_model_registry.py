"""The model registry through the stock mlflow client and raw HTTP, as against `mlflow server`."""

from __future__ import annotations

import json
import time
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

API = "/api/2.0/mlflow"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_of(call, *args, **kwargs) -> tuple[str, str]:
    """The error code and the server's message (the client prefixes the code to it)."""
    with pytest.raises(MlflowException) as caught:
        call(*args, **kwargs)
    code, message = caught.value.error_code, caught.value.message
    return code, message.removeprefix(f"{code}: ")


class AddN(mlflow.pyfunc.PythonModel):
    def __init__(self, n):
        self.n = n

    def predict(self, context, model_input, params=None):
        return [value + self.n for value in model_input]


def test_log_model_registers_and_loads_by_version_and_alias(tracking_uri):
    name = unique("adder")
    mlflow.set_experiment(unique("registry"))
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model", python_model=AddN(3), pip_requirements=[], registered_model_name=name
        )
    assert info.registered_model_version == "1"
    client = MlflowClient()
    version = client.get_model_version(name, "1")
    assert (version.name, version.version, version.current_stage, version.status) == (name, "1", "None", "READY")
    assert version.source == f"models:/{info.model_id}"
    assert version.run_id == run.info.run_id
    assert version.description == ""
    logged = client.get_logged_model(info.model_id)
    assert client.get_model_version_download_uri(name, "1") == logged.artifact_location
    # The server lists the version on the logged model (number as a number), then the client
    # appends its own entry (number as text), as with `mlflow server`.
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [
        {"name": name, "version": 1},
        {"name": name, "version": "1"},
    ]

    assert mlflow.pyfunc.load_model(f"models:/{name}/1").predict([1, 2]) == [4, 5]
    client.set_registered_model_alias(name, "champion", "1")
    assert mlflow.pyfunc.load_model(f"models:/{name}@champion").predict([10]) == [13]
    assert mlflow.pyfunc.load_model(f"models:/{name}/latest").predict([0]) == [3]

    # runs:/<run>/<name> of an MLflow 3 model resolves to the logged model.
    second = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    assert (second.version, second.source, second.run_id) == ("2", f"models:/{info.model_id}", run.info.run_id)
    # A registered version as the source of another model keeps its run.
    copy = mlflow.register_model(f"models:/{name}/1", unique("copy"))
    assert (copy.version, copy.source, copy.run_id) == ("1", f"models:/{name}/1", run.info.run_id)
    assert client.get_model_version_download_uri(copy.name, "1") == logged.artifact_location
    assert mlflow.pyfunc.load_model(f"models:/{copy.name}/1").predict([0]) == [3]


def test_registered_model_lifecycle(tracking_uri):
    client = MlflowClient()
    name = unique("lifecycle")
    before = int(time.time() * 1000)
    created = client.create_registered_model(name, tags={"team": "vision", "tier": "1"}, description="first")
    assert created.name == name
    assert before <= created.creation_timestamp == created.last_updated_timestamp
    assert created.tags == {"team": "vision", "tier": "1"}
    assert created.description == "first"
    assert created.latest_versions == []

    assert error_of(client.create_registered_model, name) == (
        "RESOURCE_ALREADY_EXISTS",
        f"Registered Model (name={name}) already exists.",
    )
    updated = client.update_registered_model(name, description="second")
    assert updated.description == "second"
    assert updated.last_updated_timestamp >= created.last_updated_timestamp

    client.create_model_version(name, "s3://bucket/models/a", tags={"k": "v"})
    client.rename_registered_model(name, name + "-renamed")
    renamed = client.get_registered_model(name + "-renamed")
    assert (renamed.name, renamed.description, renamed.tags) == (name + "-renamed", "second", created.tags)
    assert client.get_model_version(name + "-renamed", "1").tags == {"k": "v"}
    assert error_of(client.get_registered_model, name) == (
        "RESOURCE_DOES_NOT_EXIST",
        f"Registered Model with name={name} not found",
    )
    other = unique("taken")
    client.create_registered_model(other)
    assert error_of(client.rename_registered_model, name + "-renamed", other) == (
        "RESOURCE_ALREADY_EXISTS",
        f"Registered Model (name={other}) already exists.",
    )

    client.set_registered_model_tag(name + "-renamed", "team", "nlp")
    client.delete_registered_model_tag(name + "-renamed", "tier")
    client.delete_registered_model_tag(name + "-renamed", "never-set")
    assert client.get_registered_model(name + "-renamed").tags == {"team": "nlp"}

    client.set_registered_model_alias(name + "-renamed", "prod", "1")
    client.delete_registered_model(name + "-renamed")
    assert error_of(client.get_model_version, name + "-renamed", "1")[0] == "RESOURCE_DOES_NOT_EXIST"
    # A model created again under the name starts from version 1, with no old tags or aliases.
    client.create_registered_model(name + "-renamed")
    again = client.create_model_version(name + "-renamed", "s3://bucket/models/b")
    assert (again.version, again.tags, again.aliases) == ("1", {}, [])
    assert client.get_registered_model(name + "-renamed").aliases == {}


def test_version_numbers_grow_and_are_not_reused(tracking_uri):
    client = MlflowClient()
    name = unique("numbers")
    client.create_registered_model(name)
    versions = [client.create_model_version(name, f"s3://bucket/{name}/{i}").version for i in range(3)]
    assert versions == ["1", "2", "3"]
    client.delete_model_version(name, "3")
    assert client.create_model_version(name, "s3://bucket/again").version == "4"
    client.delete_model_version(name, "2")
    assert error_of(client.get_model_version, name, "2") == (
        "RESOURCE_DOES_NOT_EXIST",
        f"Model Version (name={name}, version=2) not found",
    )
    assert error_of(client.delete_model_version, name, "2")[0] == "RESOURCE_DOES_NOT_EXIST"
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["4", "1"]
    first = client.get_model_version(name, "1")
    assert (first.source, first.run_id, first.run_link, first.description) == (f"s3://bucket/{name}/0", "", "", "")
    described = client.update_model_version(name, "1", description="better")
    assert described.description == "better"
    assert described.last_updated_timestamp >= first.last_updated_timestamp
    assert error_of(client.get_model_version, name, "one") == (
        "INVALID_PARAMETER_VALUE",
        "Parameter 'version' must be an integer, got 'one'.",
    )


def test_stages_latest_versions_and_archiving(tracking_uri):
    client = MlflowClient()
    name = unique("stages")
    client.create_registered_model(name)
    for i in range(4):
        client.create_model_version(name, f"s3://bucket/{name}/{i}")
    assert client.transition_model_version_stage(name, "1", "staging").current_stage == "Staging"
    client.transition_model_version_stage(name, "2", "Production")
    client.transition_model_version_stage(name, "3", "Production")
    latest = {v.current_stage: v.version for v in client.get_latest_versions(name)}
    assert latest == {"Staging": "1", "Production": "3", "None": "4"}
    assert [v.version for v in client.get_latest_versions(name, stages=["production"])] == ["3"]
    model = client.get_registered_model(name)
    assert [(v.current_stage, v.version) for v in model.latest_versions] == [
        ("Staging", "1"),
        ("Production", "3"),
        ("None", "4"),
    ]

    moved = client.transition_model_version_stage(name, "4", "Production", archive_existing_versions=True)
    assert moved.current_stage == "Production"
    stages = {v.version: v.current_stage for v in client.search_model_versions(f"name = '{name}'")}
    assert stages == {"1": "Staging", "2": "Archived", "3": "Archived", "4": "Production"}
    assert error_of(client.transition_model_version_stage, name, "1", "Shipping") == (
        "INVALID_PARAMETER_VALUE",
        "Invalid Model Version stage: Shipping. Value must be one of None, Staging, Production, Archived.",
    )
    assert error_of(client.transition_model_version_stage, name, "1", "Archived", archive_existing_versions=True) == (
        "INVALID_PARAMETER_VALUE",
        "Model version transition cannot archive existing model versions because 'Archived' is not an "
        "Active stage. Valid stages are ['Staging', 'Production']",
    )
    assert error_of(client.get_latest_versions, name, stages=["bogus"])[1].startswith(
        "Invalid Model Version stage: bogus."
    )


def test_version_tags_and_aliases(tracking_uri):
    client = MlflowClient()
    name = unique("aliases")
    client.create_registered_model(name)
    client.create_model_version(name, "s3://bucket/a", tags={"a": "1"}, description="v1")
    client.create_model_version(name, "s3://bucket/b")
    client.set_model_version_tag(name, "1", "b", "2")
    client.delete_model_version_tag(name, "1", "a")
    assert client.get_model_version(name, "1").tags == {"b": "2"}

    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "challenger", "2")
    assert client.get_registered_model(name).aliases == {"champion": "1", "challenger": "2"}
    assert client.get_model_version(name, "1").aliases == ["champion"]
    by_alias = client.get_model_version_by_alias(name, "challenger")
    assert (by_alias.version, by_alias.aliases) == ("2", ["challenger"])
    client.set_registered_model_alias(name, "champion", "2")
    assert sorted(client.get_model_version(name, "2").aliases) == ["challenger", "champion"]
    assert client.get_model_version_by_alias(name, "Latest").version == "2"
    client.delete_registered_model_alias(name, "challenger")
    assert error_of(client.get_model_version_by_alias, name, "challenger") == (
        "INVALID_PARAMETER_VALUE",
        "Registered model alias challenger not found.",
    )
    # Deleting a version removes the aliases pointing at it.
    client.delete_model_version(name, "2")
    assert client.get_registered_model(name).aliases == {}

    assert error_of(client.set_registered_model_alias, name, "latest", "1") == (
        "INVALID_PARAMETER_VALUE",
        "'latest' alias name (case insensitive) is reserved.",
    )
    assert error_of(client.set_registered_model_alias, name, "v2", "1") == (
        "INVALID_PARAMETER_VALUE",
        "Version alias name 'v2' is reserved.",
    )
    assert error_of(client.set_registered_model_alias, name, "bad alias", "1") == (
        "INVALID_PARAMETER_VALUE",
        "Invalid alias name: 'bad alias'. Names may only contain alphanumerics, underscores (_), and dashes (-).",
    )
    assert error_of(client.set_registered_model_alias, name, "x", "9") == (
        "RESOURCE_DOES_NOT_EXIST",
        f"Model Version (name={name}, version=9) not found",
    )


def test_invalid_names_and_tags(tracking_uri):
    client = MlflowClient()
    assert error_of(client.create_registered_model, "a/b") == (
        "INVALID_PARAMETER_VALUE",
        "Invalid model name 'a/b'. Names cannot contain '/' or ':'.",
    )
    assert error_of(client.create_registered_model, "  ") == (
        "INVALID_PARAMETER_VALUE",
        "Missing value for required parameter 'name'.",
    )
    assert error_of(client.create_registered_model, "..") == (
        "INVALID_PARAMETER_VALUE",
        "Invalid value \"..\" for parameter 'name' supplied: Names may be treated as files in certain cases, "
        "and must not resolve to other names when treated as such. This name would resolve to '..'",
    )
    assert error_of(client.create_registered_model, unique("tagged"), tags={"bad$key": "v"}) == (
        "INVALID_PARAMETER_VALUE",
        "Invalid value \"bad$key\" for parameter 'key' supplied: Names may only contain alphanumerics, "
        "underscores (_), dashes (-), periods (.), spaces ( ), colon(:) and slashes (/).",
    )
    name = unique("limits")
    client.create_registered_model(name)
    assert error_of(client.set_registered_model_tag, name, "k" * 251, "v") == (
        "INVALID_PARAMETER_VALUE",
        "'key' exceeds the maximum length of 250 characters",
    )
    # The widths of MLflow's columns hold, as on MLflow's PostgreSQL store (a version tag is unbounded there).
    client.set_registered_model_tag(name, "long", "v" * 5000)
    assert len(client.get_registered_model(name).tags["long"]) == 5000
    assert error_of(client.set_registered_model_tag, name, "long", "v" * 5001) == (
        "BAD_REQUEST",
        "'value' is too long to store: at most 5000 characters, got 5001.",
    )
    assert error_of(client.create_registered_model, "n" * 257)[0] == "BAD_REQUEST"
    client.create_model_version(name, "s3://bucket/long", tags={"long": "v" * 100_000})
    assert len(client.get_model_version(name, "1").tags["long"]) == 100_000
    assert error_of(client.set_model_version_tag, name, "1", "long", "v" * 100_001) == (
        "INVALID_PARAMETER_VALUE",
        "'value' exceeds the maximum length of 100000 characters",
    )
    assert error_of(client.get_registered_model, unique("missing"))[0] == "RESOURCE_DOES_NOT_EXIST"
    assert error_of(client.create_model_version, unique("missing"), "s3://bucket/x")[0] == "RESOURCE_DOES_NOT_EXIST"


def test_search_registered_models(tracking_uri):
    client = MlflowClient()
    prefix = unique("search")
    for index, team in enumerate(["vision", "nlp", "vision", "audio", "vision"]):
        client.create_registered_model(f"{prefix}-{index}", tags={"team": team, "index": str(index)})
        time.sleep(0.002)
    mlflow.genai.register_prompt(name=f"{prefix}-prompt", template="Hi {{name}}")

    def names(filter_string, **kwargs):
        return [m.name for m in client.search_registered_models(filter_string, **kwargs)]

    everything = [f"{prefix}-{i}" for i in range(5)]
    assert names(f"name LIKE '{prefix}-%'") == everything
    assert names(f"name ILIKE '{prefix.upper()}-%' AND tags.team = 'vision'") == [everything[i] for i in (0, 2, 4)]
    assert names(f"name IN ('{prefix}-1', '{prefix}-3')") == [everything[1], everything[3]]
    assert names(f"name LIKE '{prefix}-%' AND tags.team != 'vision'") == [everything[1], everything[3]]
    assert names(f"name LIKE '{prefix}-%' AND tags.`team` LIKE '%i%'") == [everything[i] for i in (0, 2, 3, 4)]
    assert names(f"name LIKE '{prefix}-%'", order_by=["name DESC"]) == everything[::-1]
    assert names(f"name LIKE '{prefix}-%'", order_by=["last_updated_timestamp DESC"]) == everything[::-1]
    assert names(f"name LIKE '{prefix}-%' AND tags.`mlflow.prompt.is_prompt` = 'true'") == [f"{prefix}-prompt"]

    first = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2)
    assert [m.name for m in first] == everything[:2]
    second = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2, page_token=first.token)
    third = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2, page_token=second.token)
    assert [m.name for m in second] + [m.name for m in third] == everything[2:]
    assert not third.token
    assert [m.name for m in mlflow.search_registered_models(filter_string=f"name LIKE '{prefix}-%'")] == everything

    assert error_of(client.search_registered_models, "name < 'a'") == (
        "INVALID_PARAMETER_VALUE",
        "Invalid comparator for attribute: <",
    )
    assert error_of(client.search_registered_models, "version = '1'") == (
        "INVALID_PARAMETER_VALUE",
        "Invalid attribute key 'version' specified. Valid keys are '{'name'}'",
    )
    assert error_of(client.search_registered_models, "tags.team = vision") == (
        "INVALID_PARAMETER_VALUE",
        "Parameter value is either not quoted or unidentified quote types used for string value vision. "
        "Use either single or double quotes.",
    )
    assert error_of(client.search_registered_models, None, order_by=["creation_timestamp"]) == (
        "INVALID_PARAMETER_VALUE",
        "Invalid order by key 'creation_timestamp' specified. Valid keys are '{'name', 'timestamp'}'",
    )
    code, message = error_of(client.search_registered_models, None, max_results=1001)
    assert (code, message) == (
        "INVALID_PARAMETER_VALUE",
        "Invalid value \"1001\" for parameter 'max_results' supplied:  Hint: Value was of type 'str'. "
        "See the API docs for more information about request parameters.",
    )


def test_search_model_versions(tracking_uri):
    client = MlflowClient()
    name = unique("versions")
    other = unique("versions-other")
    client.create_registered_model(name)
    client.create_registered_model(other)
    run = client.create_run(client.create_experiment(unique("versions")))
    source = f"{run.info.artifact_uri}/model"
    client.create_model_version(name, source, run_id=run.info.run_id, tags={"kind": "a"})
    time.sleep(0.002)
    client.create_model_version(name, "s3://bucket/two", tags={"kind": "b"})
    time.sleep(0.002)
    client.create_model_version(other, "s3://bucket/three", tags={"kind": "a"})
    time.sleep(0.002)
    client.create_model_version(name, "s3://bucket/four")

    def found(filter_string, **kwargs):
        return [(v.name, v.version) for v in client.search_model_versions(filter_string, **kwargs)]

    both = f"name IN ('{name}', '{other}')"
    assert found(both) == [(name, "3"), (other, "1"), (name, "2"), (name, "1")]
    assert found(f"{both} AND tags.kind = 'a'") == [(other, "1"), (name, "1")]
    assert found(f"run_id = '{run.info.run_id}'") == [(name, "1")]
    assert found(f"name = '{name}' AND version_number >= 2") == [(name, "3"), (name, "2")]
    assert found(f"name = '{name}' AND version_number = '2'") == [(name, "2")]
    assert found(f"{both} AND source_path LIKE 's3://%'") == [(name, "3"), (other, "1"), (name, "2")]
    assert found(both, order_by=["name", "version_number ASC"]) == sorted(
        [(name, "1"), (name, "2"), (name, "3"), (other, "1")]
    )
    pages = client.search_model_versions(both, max_results=3)
    assert len(pages) == 3 and pages.token
    rest = client.search_model_versions(both, max_results=3, page_token=pages.token)
    assert [(v.name, v.version) for v in rest] == [(name, "1")] and not rest.token
    assert error_of(client.search_model_versions, "version_number > 1.5") == (
        "INVALID_PARAMETER_VALUE",
        "Invalid value for numeric attribute 'version_number': 1.5",
    )
    assert error_of(client.search_model_versions, "source_path IN ('a')") == (
        "INVALID_PARAMETER_VALUE",
        "Only ['name', 'run_id'] attributes support comparison with a list of quoted string values.",
    )
    assert error_of(client.search_model_versions, None, order_by=["tags.kind"]) == (
        "INVALID_PARAMETER_VALUE",
        "Invalid order by key 'kind' specified. Valid keys are "
        "{'creation_timestamp', 'last_updated_timestamp', 'name', 'version_number'}",
    )


def test_version_sources_are_checked(tracking_uri):
    client = MlflowClient()
    name = unique("sources")
    client.create_registered_model(name)
    experiment = client.create_experiment(unique("sources"))
    run = client.create_run(experiment)
    other_run = client.create_run(experiment)
    inside = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    assert inside.run_id == run.info.run_id

    def refused(source, run_id=None):
        return error_of(client.create_model_version, name, source, run_id=run_id)

    outside = f"{other_run.info.artifact_uri}/model"
    assert refused(outside, run.info.run_id) == (
        "INVALID_PARAMETER_VALUE",
        f"Invalid model version source: '{outside}'. The run_id request parameter must identify the "
        "resource that contains the source.",
    )
    assert refused(f"runs:/{other_run.info.run_id}/model", run.info.run_id)[1].endswith(
        "The run_id request parameter must identify the resource that contains the source."
    )
    assert refused("/tmp/local/model") == (
        "INVALID_PARAMETER_VALUE",
        "Invalid model version source: '/tmp/local/model'. To use a local path as a model version source, "
        "the run_id request parameter has to be specified and the local path has to be contained within "
        "the artifact directory of the run specified by the run_id.",
    )
    assert refused("s3://bucket/a/../b")[1].startswith(
        "Invalid model version source: 's3://bucket/a/../b'. If supplying a source as an http, https, local "
        "file path, ftp, objectstore, or mlflow-artifacts uri, an absolute path must be provided"
    )
    assert refused("https://elsewhere.example/model") == (
        "INVALID_PARAMETER_VALUE",
        "'source' cannot use the 'https' scheme: the 'https' scheme addresses a host other than the tracking "
        "server's configured artifact storage, so the server would connect to the host named in the URI. Set "
        "the MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES environment variable on the server to allow it.",
    )


def test_raw_http_shapes_and_paths(gateway):
    session = requests.Session()
    name = unique("raw")
    for prefix, suffix in (("/api/2.0/mlflow", "-api"), ("/ajax-api/2.0/mlflow", "-ajax")):
        created = session.post(gateway.url + prefix + "/registered-models/create", json={"name": name + suffix})
        assert (created.status_code, created.json()["registered_model"]["name"]) == (200, name + suffix)
    body = session.post(gateway.url + API + "/model-versions/create",
                        json={"name": name + "-api", "source": "s3://bucket/raw"}).json()["model_version"]
    assert set(body) == {"name", "version", "creation_timestamp", "last_updated_timestamp", "current_stage",
                         "description", "source", "run_id", "status", "run_link"}
    assert (body["version"], body["current_stage"], body["status"], body["description"], body["run_id"]) == (
        "1", "None", "READY", "", ""
    )
    latest = session.get(gateway.url + API + "/registered-models/get-latest-versions",
                         params={"name": name + "-api", "stages": "None"})
    assert [v["version"] for v in latest.json()["model_versions"]] == ["1"]
    model = session.get(gateway.url + API + "/registered-models/get", params={"name": name + "-api"}).json()
    assert set(model["registered_model"]) == {"name", "creation_timestamp", "last_updated_timestamp", "latest_versions"}
    tagged = session.post(gateway.url + API + "/registered-models/create",
                          json={"name": name + "-tag", "tags": [{"key": "k"}]})
    assert tagged.json()["registered_model"]["tags"] == [{"key": "k", "value": ""}]
    missing = session.get(gateway.url + API + "/registered-models/get", params={})
    assert (missing.status_code, missing.json()) == (400, {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Missing value for required parameter 'name'. See the API docs for more information about "
                   "request parameters.",
    })
    uri = session.get(gateway.url + API + "/model-versions/get-download-uri", params={"name": name + "-api"})
    assert (uri.status_code, uri.json()["message"]) == (400, "Parameter 'version' must be an integer, got ''.")
    wrong_method = session.post(gateway.url + API + "/registered-models/delete", json={"name": name + "-api"})
    assert wrong_method.status_code == 405
    deleted = session.delete(gateway.url + API + "/registered-models/delete", json={"name": name + "-api"})
    assert (deleted.status_code, deleted.json()) == (200, {})
    empty = session.get(gateway.url + API + "/registered-models/search", params={"filter": f"name = '{name}-api'"})
    assert empty.json() == {}
    nul = session.post(gateway.url + API + "/registered-models/create", json={"name": "nul\u0000name"})
    assert (nul.status_code, nul.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


def test_prompts_register_and_load(tracking_uri):
    name = unique("greeting")
    first = mlflow.genai.register_prompt(name=name, template="Hello {{name}}!", commit_message="first")
    second = mlflow.genai.register_prompt(name=name, template="Hi {{name}}.", commit_message="second")
    assert (first.version, second.version) == (1, 2)
    assert mlflow.genai.load_prompt(f"prompts:/{name}/1").format(name="Ada") == "Hello Ada!"
    mlflow.genai.set_prompt_alias(name, alias="production", version=2)
    assert mlflow.genai.load_prompt(f"prompts:/{name}@production").format(name="Ada") == "Hi Ada."
    client = MlflowClient()
    # Prompts stay out of model searches unless the filter asks for them.
    assert [m.name for m in client.search_registered_models(f"name = '{name}'")] == []
    assert error_of(client.create_registered_model, name) == (
        "RESOURCE_ALREADY_EXISTS",
        f"Tried to create a registered model with name {name!r}, but the name is already taken by a prompt. "
        "MLflow does not allow creating a model and a prompt with the same name.",
    )


def test_copy_model_version_and_load_by_stage_outlive_the_source_model(tracking_uri):
    source_name, target_name = unique("staged"), unique("promoted")
    mlflow.set_experiment(unique("registry-copy"))
    with mlflow.start_run() as run:
        mlflow.pyfunc.log_model(
            name="model", python_model=AddN(5), pip_requirements=[], registered_model_name=source_name
        )
    client = MlflowClient()
    client.transition_model_version_stage(source_name, "1", "Production")
    assert mlflow.pyfunc.load_model(f"models:/{source_name}/Production").predict([1]) == [6]

    copied = client.copy_model_version(f"models:/{source_name}/1", target_name)
    assert (copied.name, copied.version, copied.source, copied.run_id) == (
        target_name, "1", f"models:/{source_name}/1", run.info.run_id
    )
    assert copied.current_stage == "None"  # a copy starts in no stage, as in MLflow
    found = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert sorted((v.name, v.version) for v in found) == sorted([(source_name, "1"), (target_name, "1")])

    client.delete_registered_model(source_name)
    assert [m.name for m in client.search_registered_models(f"name = '{source_name}'")] == []
    # The copy reads the logged model's files, which do not go with the source model.
    assert mlflow.pyfunc.load_model(f"models:/{target_name}/1").predict([2]) == [7]
