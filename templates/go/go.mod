module example.invalid/{{name}}

go 1.27
