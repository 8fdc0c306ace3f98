cwlVersion: v1.2
class: CommandLineTool
doc: Passes its File on; input and output share a name, as in tool.cwl.
inputs:
  text: File
outputs:
  text:
    type: File
    outputBinding:
      glob: $(inputs.text.basename)
requirements:
  InitialWorkDirRequirement:
    listing: [$(inputs.text)]
baseCommand: "true"
