cwlVersion: v1.2
class: CommandLineTool
doc: Sleep, then print the step's name, or fail with exit code 3 and a message on stderr.
requirements:
  InlineJavascriptRequirement: {}
baseCommand: [sh, -c]
arguments:
  - 'sleep "$1"; if [ "$2" = true ]; then echo "$0: bad input" >&2; exit 3; fi; echo "$0 done"'
  - $(inputs.name)
  - $(inputs.seconds)
  - '$(inputs.fail ? "true" : "false")'
inputs:
  name: string
  seconds: int
  fail: boolean
  after: {type: File?}
stdout: $(inputs.name).txt
outputs:
  out: stdout
