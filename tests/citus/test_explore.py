from tests.e2e.test_flood import test_concurrent_writers_on_one_run_and_on_many, test_a_param_conflict_inside_a_busy_flush_fails_alone  # noqa
from tests.e2e.test_run_lifecycle import *  # noqa
from tests.e2e.test_bulk_http import *  # noqa
from tests.e2e.test_gc import *  # noqa
from tests.e2e.test_model_registry import *  # noqa
from tests.e2e.test_artifacts import *  # noqa
from tests.e2e.test_http_api import *  # noqa
