#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: CommandLineTool
label: hello
doc: Write a greeting into a file (the tool's standard output, captured as a File).

baseCommand: echo
arguments: ["Hello, $(inputs.name)!"]

inputs:
  name:
    type: string
    default: world
    doc: Who to greet.

stdout: hello-$(inputs.name).txt

outputs:
  greeting:
    type: stdout
