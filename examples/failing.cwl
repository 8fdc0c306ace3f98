#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: Workflow
label: failing
doc: |
  One step fails at once (exit 3, with a message on stderr) when the input `fail` is true,
  while two sibling steps take a few seconds. A runner should report the failure as soon as
  it happens. The slow steps do not depend on `fail` and always produce the same output, so
  after a resubmission with `fail: false` a runner that reuses work can reuse them.

requirements:
  MultipleInputFeatureRequirement: {}  # combine takes a list of sources

inputs:
  fail:
    type: boolean
    doc: Make the `check` step fail.
  seconds:
    type: int
    default: 5
    doc: How long each slow step takes.

outputs:
  report:
    type: File
    outputSource: combine/report

steps:
  slow_a:
    in:
      label: {default: slow_a}
      seconds: seconds
    out: [result]
    run:
      class: CommandLineTool
      doc: Sleep, then print a fixed line (the same output on every run).
      baseCommand: [sh, -c, 'sleep "$0" && echo "$1 done"']
      arguments: [$(inputs.seconds), $(inputs.label)]
      inputs:
        label: string
        seconds: int
      stdout: $(inputs.label).txt
      outputs:
        result: stdout

  slow_b:
    in:
      label: {default: slow_b}
      seconds: seconds
    out: [result]
    run:
      class: CommandLineTool
      doc: Sleep, then print a fixed line (the same output on every run).
      baseCommand: [sh, -c, 'sleep "$0" && echo "$1 done"']
      arguments: [$(inputs.seconds), $(inputs.label)]
      inputs:
        label: string
        seconds: int
      stdout: $(inputs.label).txt
      outputs:
        result: stdout

  check:
    in:
      fail: fail
    out: [result]
    run:
      class: CommandLineTool
      doc: Exit 3 with a message on stderr when `fail` is true, else print "check ok".
      baseCommand: [sh, -c]
      arguments:
        - |
          if [ "$0" = fail=true ]; then
            echo "check: failing on purpose (input fail is true); set fail: false to fix" >&2
            exit 3
          fi
          echo "check ok"
        - fail=$(inputs.fail)
      inputs:
        fail: boolean
      stdout: check.txt
      outputs:
        result: stdout

  combine:
    in:
      files: [slow_a/result, slow_b/result, check/result]
    out: [report]
    run:
      class: CommandLineTool
      doc: Concatenate the results.
      baseCommand: cat
      inputs:
        files:
          type: File[]
          inputBinding: {}
      stdout: report.txt
      outputs:
        report: stdout
