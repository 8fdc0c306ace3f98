#!/usr/bin/env cwl-runner
cwlVersion: v1.2
class: Workflow
label: scatter
doc: |
  Greet every name of a list in parallel (one hello.cwl job per name, a scatter),
  then gather the greetings into one file.

requirements:
  ScatterFeatureRequirement: {}

inputs:
  names:
    type: string[]
    doc: One greeting is made for each name.

outputs:
  greetings:
    type: File[]
    outputSource: greet/greeting
  all:
    type: File
    outputSource: gather/all

steps:
  greet:
    run: hello.cwl
    scatter: name
    in:
      name: names
    out: [greeting]

  gather:
    in:
      files: greet/greeting
    out: [all]
    run:
      class: CommandLineTool
      doc: Concatenate the files, in order.
      baseCommand: cat
      inputs:
        files:
          type: File[]
          inputBinding: {}
      stdout: all-greetings.txt
      outputs:
        all:
          type: stdout
