# The two commands of the README. Both install what they need (tox in .tools/, then
# everything else through tox and the provisioning step it runs).
TOX_VERSION := 4.67.13
TOOLS := .tools
TOX := $(TOOLS)/bin/tox

.PHONY: demo test

demo: $(TOX)
	$(TOX) -e demo

test: $(TOX)
	$(TOX)

$(TOX):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet tox==$(TOX_VERSION)
