# Two commands do everything on a fresh machine: `make run` and `make test`.
.PHONY: setup run test lint bench bench-faults bench-scale bench-kb train kb screenshots clean

setup:
	@bash scripts/setup.sh

train: setup
	@.venv/bin/promptly train

kb: setup
	@.venv/bin/promptly kb index

run: setup train kb
	.venv/bin/promptly run

test: setup
	@bash scripts/test.sh

lint: setup
	.venv/bin/ruff check bot knowledge_base actions tests bench
	.venv/bin/ruff format --check bot knowledge_base actions tests bench
	.venv/bin/mypy

bench: setup train
	.venv/bin/python bench/ack_latency.py
	.venv/bin/python bench/fast_path.py
	.venv/bin/python bench/fast_path_quality.py
	.venv/bin/python bench/sla_monitor.py
	.venv/bin/python bench/replay_day.py --minutes 4

bench-faults: setup train
	.venv/bin/python bench/faults.py

# Needs PostgreSQL and Redis on 127.0.0.1 (bench/README.md, "Scale-out"); about 15 minutes.
bench-scale: setup train
	.venv/bin/python bench/scale_out.py

bench-kb: setup
	HF_HUB_OFFLINE=1 .venv/bin/python bench/kb_quality.py --all
	.venv/bin/python bench/kb_scale.py
	HF_HUB_OFFLINE=1 .venv/bin/python bench/kb_shared_edit.py
	.venv/bin/python bench/nlu_quality.py --dataset ../shared/eval/clinc150

screenshots: setup train
	@bash scripts/ensure-chromium.sh
	PROMPTLY_SCREENSHOTS=1 .venv/bin/pytest -q tests/e2e/test_console.py

clean:
	rm -rf var .promptly .pytest_cache .mypy_cache .ruff_cache
