"""The package's own client as a student's: a code as its key, the gateway as its base URL,
nothing else changed. A budget refusal reaches it as a SpendingLimitError in the gateway's
words, and its balance is what is left of the student's budget, in images."""

from __future__ import annotations

import pytest

import qwen_widgets as qw
from qwen_widgets.gateway import DataFolder, start
from qwen_widgets.simulator import Simulator, serve
from qwen_widgets.widgets._format import balance_words, error_message

from ..conftest import TIME_SCALE, fast_options
from .conftest import PLANTED_KEY, add_class


@pytest.fixture
def live_gateway(data):
    """A gateway on the real clock in front of a fast simulator (tasks of a fraction of a second)."""
    provider = Simulator(seed=3, time_scale=TIME_SCALE, api_keys={PLANTED_KEY})
    with serve(provider) as upstream:
        DataFolder(data).create()
        with start(data, api_key=PLANTED_KEY, base_url=upstream.url) as server:
            yield server, provider


def test_a_students_client_generates_then_meets_its_budget_in_words(live_gateway, data):
    codes = add_class(data, "art", students=2, images_per_day=2)
    server, provider = live_gateway
    with qw.QwenClient(codes["student-1"], base_url=server.url, **fast_options()) as client:
        task = client.generate("a kite", n=2)
        assert task.status is qw.TaskStatus.COMPLETED and len(task.images) == 2
        assert len(client.fetch_image(task.images[0])) > 0  # images need no code
        balance = client.balance()
        assert (balance.unit, balance.remaining) == ("images", 0)
        assert balance_words(balance).startswith("Balance 0 images left")
        posts = provider.count("POST")
        with pytest.raises(qw.SpendingLimitError) as refused:
            client.generate("one kite more")
    assert provider.count("POST") == posts  # refused at the gateway: nothing reached the provider
    error = refused.value
    assert (error.scope, error.limit, error.used, error.allowed, error.needed) == ("student", "images per day", 2, 2, 1)
    assert "2 of 2 images" in str(error) and error.frees_at is not None
    assert error_message(error) == str(error)[:1].upper() + str(error)[1:] + "."
    journal_states = [entry.state.value for entry in client.journal.entries()]
    assert journal_states[-1] == "refused"  # a clear refusal: nothing was created, nothing to resume


def test_a_wrong_code_is_an_authentication_error(live_gateway, data):
    add_class(data, "art", students=1, images_per_day=2)
    server, _ = live_gateway
    with qw.QwenClient("not-a-code-of-this-class", base_url=server.url, **fast_options()) as client:
        with pytest.raises(qw.AuthenticationError):
            client.generate("a kite")
