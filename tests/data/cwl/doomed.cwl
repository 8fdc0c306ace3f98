cwlVersion: v1.2
class: Workflow
doc: |
  The headline scenario: `prep` finishes at once; then `fail_fast` fails two seconds in (when
  `fail` is true) while four siblings sleep. `sibling_4` also fails, later, when `fail` is true: the run's
  second error. With `fail: false` everything succeeds.
requirements:
  MultipleInputFeatureRequirement: {}
  StepInputExpressionRequirement: {}
inputs:
  fail: boolean
  long: {type: int, default: 20}
  short: {type: int, default: 10}
outputs:
  report: {type: File, outputSource: gather/report}
steps:
  prep:
    run: doomed-tool.cwl
    in: {name: {default: prep}, seconds: {default: 0}, fail: {default: false}}
    out: [out]
  fail_fast:  # fails 2 s in: its siblings, started with it, are all running by then
    run: doomed-tool.cwl
    in: {name: {default: fail_fast}, seconds: {default: 2}, fail: fail, after: prep/out}
    out: [out]
  sibling_1:
    run: doomed-tool.cwl
    in: {name: {default: sibling_1}, seconds: long, fail: {default: false}, after: prep/out}
    out: [out]
  sibling_2:
    run: doomed-tool.cwl
    in: {name: {default: sibling_2}, seconds: long, fail: {default: false}, after: prep/out}
    out: [out]
  sibling_3:
    run: doomed-tool.cwl
    in: {name: {default: sibling_3}, seconds: long, fail: {default: false}, after: prep/out}
    out: [out]
  sibling_4:
    run: doomed-tool.cwl
    in: {name: {default: sibling_4}, seconds: short, fail: fail, after: prep/out}
    out: [out]
  gather:
    run:
      class: CommandLineTool
      baseCommand: cat
      inputs:
        parts: {type: 'File[]', inputBinding: {}}
      stdout: report.txt
      outputs:
        report: stdout
    in:
      parts: [fail_fast/out, sibling_1/out, sibling_2/out, sibling_3/out, sibling_4/out]
    out: [report]
