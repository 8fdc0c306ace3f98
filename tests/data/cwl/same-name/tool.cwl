cwlVersion: v1.2
class: CommandLineTool
doc: An input and an output with the same name (which cwltool's packer used to lose).
inputs:
  text: string
outputs:
  text:
    type: File
    outputBinding:
      glob: out.txt
baseCommand: [sh, -c, 'echo "$0" > out.txt']
arguments: [$(inputs.text)]
