"""The values and rules: requests and their validation, tasks and images, reading the API's
wire format, the error tree, records and DataFrames, plans, limits and prices. Pure: no I/O,
and nothing imported from the layers above."""
