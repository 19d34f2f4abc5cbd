"""hci_lightfield: HCI 4D light fields refocused into 10-slice stacks by shift-and-add."""
