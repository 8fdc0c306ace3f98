cwlVersion: v1.2
class: Workflow
doc: Two tools whose input and output share a name; cwltool's packer drops one of those outputs.
inputs:
  text: string
outputs:
  result:
    type: File
    outputSource: pass/text
steps:
  write:
    run: tool.cwl
    in:
      text: text
    out: [text]
  pass:
    run: passthrough.cwl
    in:
      text: write/text
    out: [text]
