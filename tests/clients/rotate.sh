#!/bin/sh
# Placeholder: replaced in this issue by the rotation tool tests.
exit 77
