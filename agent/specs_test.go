package agent

const specOne = `version: 1
appliances:
  - name: nas1
    address: 127.0.0.1:7401
    pools: [{name: tank, path: /mnt/tank}]
`

const specTwo = specOne + `shares:
  - name: docs
    appliance: nas1
    pool: tank
`
